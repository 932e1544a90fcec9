"""The network core: VGG names, weights, the pooling switch, the extractor, geometry and
tiles. It knows no engine."""
