package listen

// SetAfterClaim runs f between a UDP address's check and its binds (where
// another process starting at the same instant would bind), until the
// returned function is called.
func SetAfterClaim(f func(addr string)) (restore func()) {
	afterClaim = f
	return func() { afterClaim = nil }
}
