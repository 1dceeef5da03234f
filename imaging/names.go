package imaging

import "strings"

// IsImageName reports whether a file or object name has one of the
// ImageExtensions (case-insensitive): the rule OpenDataset applies, for
// other dataset listings (object storage prefixes) to apply too.
func IsImageName(name string) bool { return isImageName(name) }

// SplitName normalises a split folder name (train, val, valid,
// validation, test; any case) to "train", "val" or "test"; ok is false for
// other names.
func SplitName(dir string) (split string, ok bool) {
	split, ok = splitNames[strings.ToLower(dir)]
	return split, ok
}
