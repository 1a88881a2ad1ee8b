package keystore

// SetAfterPathCheck makes f run between the directory store's check of the
// way to a file and its open, until restore is called.
func SetAfterPathCheck(f func(resolved string)) (restore func()) {
	old := afterPathCheck
	afterPathCheck = f
	return func() { afterPathCheck = old }
}
