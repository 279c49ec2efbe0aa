package handler

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"

	"github.com/gin-gonic/gin"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/source"
)

// Importer makes a decoded import batch durable: ingest.Ingester.IngestBatch.
type Importer interface {
	IngestBatch(ctx context.Context, source string, msgs []message.Message, recalls []message.Recall) (ingest.Result, error)
}

// maxImportBatch bounds one POST /v1/admin/import body; `imbridge import`
// sends batches of about a megabyte.
const maxImportBatch = 64 << 20

var sourceName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// importHandler is POST /v1/admin/import?source=NAME: one batch of
// messages and recalls that `imbridge import` decoded from a history file,
// in ingest's wire form. It answers once the batch is durable (or refused
// whole): {"accepted":n,"duplicates":d,"recalls":r,"dropped":[positions of
// the duplicates]}. 503 (spool full, shutting down) means: send it again
// later.
func importHandler(logger *slog.Logger, m *metrics.Metrics, in Importer) gin.HandlerFunc {
	return func(c *gin.Context) {
		if in == nil {
			c.JSON(http.StatusNotFound, gin.H{"error": "this server does not take imports"})
			return
		}
		src := c.Query("source")
		if !sourceName.MatchString(src) {
			writeError(c, logger, source.BadRequest("source %q: want a source name such as tencent", src))
			return
		}
		body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxImportBatch+1))
		if err != nil {
			writeError(c, logger, source.BadRequest("reading the batch: %v", err))
			return
		}
		if len(body) > maxImportBatch {
			writeError(c, logger, &source.Error{Status: http.StatusRequestEntityTooLarge, Msg: "an import batch is at most 64 MiB"})
			return
		}
		msgs, recalls, err := ingest.DecodeWire(body)
		if err != nil {
			writeError(c, logger, source.BadRequest("%v", err))
			return
		}
		res, err := in.IngestBatch(c.Request.Context(), src, msgs, recalls)
		if err != nil {
			var ie *ingest.InvalidError
			if errors.As(err, &ie) {
				writeError(c, logger, source.BadRequest("%v", ie))
				return
			}
			writeError(c, logger, err)
			return
		}
		m.CountImport(src, metrics.ImportCounts{Accepted: res.Accepted, Duplicates: res.Duplicates, Recalls: res.Recalls})
		dropped := res.Dropped
		if dropped == nil {
			dropped = []int{}
		}
		c.JSON(http.StatusOK, gin.H{"accepted": res.Accepted, "duplicates": res.Duplicates, "recalls": res.Recalls, "dropped": dropped})
	}
}
