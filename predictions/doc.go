// Package predictions writes prediction rows (one per input image) in the
// formats headtune offers, CSV, JSON Lines and terminal text, and reads back
// which images an interrupted job already wrote, so that it can resume.
//
// Each format lives in a file of its own and registers itself with a Format
// value: a new format is one new file.
//
// Writers flush after every row: a job that is killed loses at most the row
// in flight, and Create with Resume finds everything before it (a torn last
// line is cut off first).
package predictions
