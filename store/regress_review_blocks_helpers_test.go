package store

// ServerAddr is the address s's block reader dials. For the review's tests.
func ServerAddr(s *Store) string { return s.blocks.addr }

// BlockReaderCompresses reports whether s's block reader asks for
// compressed blocks. For the review's tests.
func BlockReaderCompresses(s *Store) bool { return s.blocks.compress }
