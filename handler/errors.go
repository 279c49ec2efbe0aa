package handler

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
)

// Error is a client-facing error: a status, a message that says what is
// wrong, and for batch bodies the line of the first bad message.
type Error struct {
	Status int
	Msg    string
	Line   int // 1-based line in the body; 0 when not about one line
	Index  int // 1-based message index in the body; 0 when not about one message
}

func (e *Error) Error() string { return e.Msg }

func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Msg: sprintf(format, args...)}
}

// statusOf is the one table from errors to HTTP statuses. Errors it does not
// know are 500 with a generic message; their detail goes to the log only.
func statusOf(err error) (int, string) {
	var he *Error
	switch {
	case errors.As(err, &he):
		return he.Status, he.Msg
	case errors.Is(err, spool.ErrFull):
		return http.StatusServiceUnavailable, "spool full: imbridge cannot store more until ClickHouse catches up; retry later"
	case errors.Is(err, spool.ErrClosed):
		return http.StatusServiceUnavailable, "shutting down; retry later"
	case errors.Is(err, spool.ErrFailed):
		return http.StatusServiceUnavailable, "the spool cannot write to disk; retry later"
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, "ClickHouse is unavailable; retry later"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "request timed out or was cancelled"
	}
	return http.StatusInternalServerError, "internal error"
}

// writeError renders err once as {"error": msg} (plus "line"/"message" when
// known) and logs 5xx at Error, 4xx at Info.
func writeError(c *gin.Context, logger *slog.Logger, err error) {
	status, msg := statusOf(err)
	attrs := []any{"method", c.Request.Method, "path", c.FullPath(), "status", status, "err", err}
	if status >= 500 {
		logger.Error("request failed", attrs...)
	} else {
		logger.Info("request refused", attrs...)
	}
	body := gin.H{"error": msg}
	var he *Error
	if errors.As(err, &he) {
		if he.Line > 0 {
			body["line"] = he.Line
		}
		if he.Index > 0 {
			body["message"] = he.Index
		}
	}
	c.AbortWithStatusJSON(status, body)
}
