// Package faces finds faces in photos and turns each into a crop a backbone
// can take: detection (BlazeFace through ONNX Runtime, anchor decoding and
// overlap suppression in Go), alignment (rotate so the eyes are level) and a
// square crop with a margin, sampled straight into the backbone's input
// tensor.
//
// # Coordinates
//
// Every position (boxes, keypoints) is in pixels of the decoded image in
// its displayed orientation (imaging applies EXIF rotation while decoding),
// continuous coordinates: pixel (i, j) covers [i, i+1) x [j, j+1), so its
// centre is (i+0.5, j+0.5).
//
// # Recipe
//
// What a crop is depends on imaging.FaceSpec (detector, threshold,
// suppression, alignment, margin), which is part of imaging.Spec and so of
// the feature cache key, of heads and of exports. A sample is an image and
// a face index; faces are numbered largest first (box area, then score),
// so index 0 is the face `--faces largest` takes.
//
// # Sampling
//
// A crop pixel is the average of SamplesPerSide x SamplesPerSide bilinear
// samples spread evenly over its footprint in the source (rotated with the
// frame), taps outside the image counting as black: what ONNX's GridSample
// (bilinear, "zeros" padding, align_corners 0) on a grid four times finer,
// then a 4x4 AveragePool, computes, so an exported graph crops identically,
// rotation included. The average keeps large faces from aliasing.
package faces
