package models

// DefaultModel is the backbone `headtune extract` uses without --model:
// MobileNetV2's ImageNet-frozen part, built from registry-shipped weights so
// it works offline. README.md ("Choosing the default backbone") gives the
// measured speed and accuracy trade-off against inceptionv3-imagenet.
const DefaultModel = "mobilenetv2-imagenet"
