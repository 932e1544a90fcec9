"""Fast style networks (Johnson et al. 2016): a network trained once with the style losses,
then one forward pass per photo.

* `net.py`: `TransformerNet`, the image transformation network;
* `model.py`: `save_model` / `load_model`, a network and its recipe in one .safetensors file;
* `engine.py`: `FastStyle`, the registered engine (`artconv style PHOTO --model M`);
* `tiled.py`: exact tiled inference (each instance norm's statistics over all tiles);
* `pretrained.py`: pytorch/examples' published models (.pth, and as presets by name);
* `export.py`: ONNX export.
"""
