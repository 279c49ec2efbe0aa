package handler

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/source"
	"github.com/imbridge/imbridge/store"
)

// statusOf is the one table from errors to HTTP statuses. Errors it does not
// know are 500 with a generic message; their detail goes to the log only.
func statusOf(err error) (int, string) {
	var se *source.Error
	var ie *ingest.InvalidError
	var pu *pullUnavailable
	switch {
	case errors.As(err, &pu):
		return http.StatusServiceUnavailable, "ClickHouse is unavailable; retry later"
	case errors.As(err, &se):
		return se.Status, se.Msg
	case errors.As(err, &ie):
		return http.StatusBadRequest, ie.Error()
	case errors.Is(err, ingest.ErrFull):
		return http.StatusServiceUnavailable, "spool full: imbridge cannot store more until ClickHouse catches up; retry later"
	case errors.Is(err, ingest.ErrUnavailable):
		return http.StatusServiceUnavailable, "imbridge cannot store messages now (shutting down or a disk error); retry later"
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, "ClickHouse is unavailable; retry later"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "request timed out or was cancelled"
	}
	return http.StatusInternalServerError, "internal error"
}

// logRefusal logs a refused request, with its request id and the error's
// whole chain: 5xx at Error, 4xx at Info.
func logRefusal(logger *slog.Logger, c *gin.Context, status int, err error) {
	attrs := []any{"request_id", requestID(c), "method", c.Request.Method, "route", c.FullPath(), "status", status, "err", err}
	if status >= 500 {
		logger.Error("request failed", attrs...)
	} else {
		logger.Info("request refused", attrs...)
	}
}

// writeError renders err once as {"error": msg} and logs it.
func writeError(c *gin.Context, logger *slog.Logger, err error) {
	status, msg := statusOf(err)
	logRefusal(logger, c, status, err)
	c.AbortWithStatusJSON(status, gin.H{"error": msg})
}
