"""Files in and out: images, recipes, colour conversions, contact sheets, output writers."""
