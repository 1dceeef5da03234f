// Package job is headtune as a Go library: one entry point per job, each
// taking a context and an options struct and returning a result value, as
// the headtune command calls them.
//
//	Extract  images -> cached backbone features (and the dataset's view)
//	Train    cached features -> a head file (with its split recorded)
//	Eval     a head on its recorded test split, or on a labelled folder
//	Predict  images -> rows for a predictions.Writer (head or export)
//	Export   a head -> one combined ONNX model
//	Inspect  an ONNX model's inputs, outputs and feature tensor
//	CacheList, CacheCheck, CacheExportNPY  the feature cache
//	ModelsList, ModelsPull, ModelsAdd, ModelsRemove, ModelsVerify  backbones
//
// Every options struct embeds Env (where the cache and the installed
// models live, how ONNX Runtime runs). Zero values mean the documented
// defaults, so a program can call
//
//	res, err := job.Train(ctx, job.TrainOptions{Env: env, Head: "my.head"})
//
// after an Extract into the same Env.CacheDir. Jobs print nothing: progress
// and per-file problems arrive through the callbacks in the options, and
// everything worth reporting is in the result. Cancelling ctx stops a job
// at the next batch; finished work (cache rows, prediction rows) is kept,
// and the result, when not nil, describes what was done.
package job
