// Package imaging turns image files into the float32 tensors a vision
// backbone expects, and finds labelled images on disk. It knows nothing of
// ONNX.
//
// # Pipeline
//
//	bytes ──Decode──▶ *RGB (packed 8-bit, EXIF-oriented, alpha composited)
//	      ──Spec.ResizeInto──▶ Width x Height *RGB (crop / squash / letterbox)
//	      ──Spec.Fill──▶ []float32 (NCHW or NHWC, RGB or BGR, scale/mean/std)
//
// Spec.LoadBytes and Spec.Load do all three with the buffers of a Scratch,
// which a worker keeps from image to image: after the first image of a
// given size nothing is allocated except by the standard decoders
// themselves (image/jpeg allocates its output).
//
// # Fidelity
//
// The resampler reproduces Pillow's ImagingResample in fixed point, so
// bilinear, bicubic and area ("BOX") resizes are bit-identical to PIL's
// Image.resize, and crop mode follows torchvision 0.14's Resize+CenterCrop
// geometry exactly (testdata/gen.py makes the goldens; Fill matches
// torchvision's Resize(256)+CenterCrop(224)+ToTensor+Normalize to 7e-7).
// JPEGs are decoded by image/jpeg with libjpeg-turbo's "fancy" chroma
// upsampling and colour tables, within 0.05 levels on average (at most 3)
// of PIL; the rest is the IDCT, which differs between the two libraries.
//
// Deliberate differences from torchvision's default loader
// (Image.open(f).convert("RGB")):
//   - the EXIF orientation of JPEG, PNG, WebP and TIFF files is applied (PIL
//     leaves JPEG/PNG/WebP pixels in stored order unless
//     ImageOps.exif_transpose is called);
//   - transparent pixels are composited over Spec.Background instead of
//     dropping alpha;
//   - 16-bit grey images keep their high byte (PIL clips them to 0..255).
//
// # Determinism
//
// With Spec.FastJPEG false, every result is computed by Go code in integer
// arithmetic (float32 only in the last normalisation step), so it is the
// same on every machine and run. With FastJPEG true, JPEGs go to
// FastJPEGDecoder (libjpeg-turbo through imaging/turbojpeg) when it is
// installed, decoding at a reduced DCT scale; those pixels differ from the
// pure-Go ones by a few levels, and the scale depends on the image and
// spec, so FastJPEG is part of the spec and of its hash.
//
// # Datasets
//
// OpenDataset reads a folder of class folders (optionally under
// train/val/test split folders) or a CSV manifest (path,label[,split]), see
// its documentation.
package imaging
