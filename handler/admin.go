package handler

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/source"
	"github.com/imbridge/imbridge/store"
)

// Admin is the admin API (/v1/admin/…) through which commands reach a
// running serve for what it owns (the spool, the maps). Token is
// admin.token; an empty token disables the API.
type Admin struct {
	Token string
	// Status describes the running server (JSON-encodable).
	Status func(ctx context.Context) any
	// PutTeam and PutURL write one map load as a new version; the loader and
	// the re-issue pick it up at once.
	PutTeam func(ctx context.Context, entries []store.TeamMapping) (uint64, error)
	PutURL  func(ctx context.Context, entries []store.URLMapping) (uint64, error)
	// LoadTeamCSV and LoadURLCSV load a map CSV streamed in the request
	// body (the map loaders' files, of any size) as one version.
	LoadTeamCSV func(ctx context.Context, body io.Reader) (store.LoadResult, error)
	LoadURLCSV  func(ctx context.Context, body io.Reader) (store.LoadResult, error)
	// Import makes one batch of an `imbridge import` durable (see
	// handler/import.go); nil disables the route.
	Import Importer
}

func routeAdmin(g *gin.RouterGroup, logger *slog.Logger, m *metrics.Metrics, a *Admin) {
	if a == nil || a.Token == "" {
		g.Any("/*any", func(c *gin.Context) {
			c.JSON(http.StatusNotFound, gin.H{"error": "the admin API is disabled on this server (set admin.token)"})
		})
		return
	}
	g.Use(func(c *gin.Context) {
		if !source.BearerMatches(c.Request, a.Token) {
			writeError(c, logger, source.Unauthorized("missing or wrong admin token"))
		}
	})
	g.GET("/status", func(c *gin.Context) { c.JSON(http.StatusOK, a.Status(c.Request.Context())) })
	g.POST("/import", importHandler(logger, m, a.Import))
	g.POST("/maps/team", func(c *gin.Context) {
		var entries []store.TeamMapping
		if err := strictJSON(c, &entries); err != nil {
			writeError(c, logger, source.BadRequest("body: a JSON array of {\"Source\", \"GroupID\", \"TID\"}: %v", err))
			return
		}
		putMapping(c, logger, func(ctx context.Context) (uint64, error) {
			if err := store.ValidateTeamMappings(entries); err != nil {
				return 0, err
			}
			return a.PutTeam(ctx, entries)
		})
	})
	g.POST("/maps/url", func(c *gin.Context) {
		var entries []store.URLMapping
		if err := strictJSON(c, &entries); err != nil {
			writeError(c, logger, source.BadRequest("body: a JSON array of {\"Old\", \"New\"}: %v", err))
			return
		}
		putMapping(c, logger, func(ctx context.Context) (uint64, error) {
			if err := store.ValidateURLMappings(entries); err != nil {
				return 0, err
			}
			return a.PutURL(ctx, entries)
		})
	})
	g.POST("/maps/team/csv", loadCSV(logger, a.LoadTeamCSV))
	g.POST("/maps/url/csv", loadCSV(logger, a.LoadURLCSV))
}

// loadCSV answers a streamed map CSV load: {"version", "entries",
// "changed"}, or the error naming the bad lines.
func loadCSV(logger *slog.Logger, load func(context.Context, io.Reader) (store.LoadResult, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		if load == nil {
			c.JSON(http.StatusNotFound, gin.H{"error": "this server does not load map CSVs"})
			return
		}
		// A map of millions of lines streams for longer than the server's
		// read timeout.
		_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Time{})
		res, err := load(c.Request.Context(), c.Request.Body)
		if mapError(c, logger, err) {
			return
		}
		c.JSON(http.StatusOK, gin.H{"version": res.Version, "entries": res.Entries, "changed": res.Changed})
	}
}

func putMapping(c *gin.Context, logger *slog.Logger, put func(context.Context) (uint64, error)) {
	v, err := put(c.Request.Context())
	if mapError(c, logger, err) {
		return
	}
	c.JSON(http.StatusOK, gin.H{"version": v})
}

// mapError answers a failed map load (409 for a conflict, 400 for a bad
// mapping) and reports whether err was one.
func mapError(c *gin.Context, logger *slog.Logger, err error) bool {
	msg := err
	if bad := (*store.BadLinesError)(nil); errors.As(err, &bad) {
		msg = bad // the lines, without the call chain
	}
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrMappingConflict):
		c.JSON(http.StatusConflict, gin.H{"error": msg.Error()})
	case errors.Is(err, store.ErrBadMapping):
		c.JSON(http.StatusBadRequest, gin.H{"error": msg.Error()})
	default:
		writeError(c, logger, err)
	}
	return true
}

// strictJSON decodes the body into v, refusing unknown fields and trailing
// data.
func strictJSON(c *gin.Context, v any) error {
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON array")
	}
	return nil
}
