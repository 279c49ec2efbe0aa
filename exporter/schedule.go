package exporter

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/robfig/cron/v3"
)

// Schedule runs job on spec (the standard five fields or a descriptor such
// as @daily, the dialect config.CronParser validates) until ctx ends, then waits for a running job to
// return. A job still going when the next is due makes that one skipped, not
// doubled; a panic is recovered and logged. job gets ctx.
func Schedule(ctx context.Context, spec string, logger *slog.Logger, job func(ctx context.Context)) error {
	cl := cronLogger{logger}
	c := cron.New(cron.WithLogger(cl), cron.WithChain(cron.Recover(cl), cron.SkipIfStillRunning(cl)))
	if _, err := c.AddFunc(spec, func() { job(ctx) }); err != nil {
		return fmt.Errorf("export.schedule %q: %w", spec, err)
	}
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done()
	return nil
}

// cronLogger is cron's logger on slog.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) {
	if msg == "skip" {
		c.l.Warn("export schedule: the previous run is still going; this one is skipped")
		return
	}
	c.l.Debug("export schedule: "+msg, kv...)
}

func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("export schedule: "+msg, append(kv, "err", err)...)
}
