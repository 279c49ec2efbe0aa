package store_test

import (
	"testing"

	"github.com/imbridge/imbridge/store"
)

// 4a11cf4 says the block reader "compresses exactly when the driver does",
// but it compresses when opts.Compression != nil. clickhouse-go parses
// compress=none (and a lone compress_level=N) into a non-nil Compression
// whose method is none: the driver sends and reads plain blocks, the block
// reader asks for LZ4 ones, against the DSN's explicit choice.
func TestReview2CompressNoneDSN(t *testing.T) {
	for _, dsn := range []string{
		"clickhouse://10.0.0.5:9000/db?compress=none",
		"clickhouse://127.0.0.1:9000/db?compress=none",
	} {
		s, err := store.New(dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		if store.HasBlockReader(s) && store.BlockReaderCompresses(s) != store.DriverCompresses(s) {
			t.Errorf("%s: the driver compresses %v, the block reader %v", dsn, store.DriverCompresses(s), store.BlockReaderCompresses(s))
		}
		s.Close()
	}
}
