"""Pure tensor/array functions: transforms, boxes, masks, RLE. No model, no I/O."""
