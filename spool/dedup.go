package spool

import (
	"time"

	"github.com/imbridge/imbridge/message"
)

// dedupIndex remembers keys for at least window and at most twice window:
// two generations, the older dropped whole when the newer is window old.
// Lookups and inserts are O(1) and expiry never scans.
type dedupIndex struct {
	window    time.Duration
	cur, prev map[message.DedupKey]struct{}
	curStart  time.Time
}

func newDedupIndex(window time.Duration, now time.Time) *dedupIndex {
	return &dedupIndex{window: window, cur: map[message.DedupKey]struct{}{}, prev: map[message.DedupKey]struct{}{}, curStart: now}
}

func (d *dedupIndex) rotate(now time.Time) {
	if d.window > 0 && now.Sub(d.curStart) >= d.window {
		d.prev, d.cur, d.curStart = d.cur, map[message.DedupKey]struct{}{}, now
	}
}

func (d *dedupIndex) seen(k message.DedupKey) bool {
	if d.window <= 0 {
		return false
	}
	if _, ok := d.cur[k]; ok {
		return true
	}
	_, ok := d.prev[k]
	return ok
}

func (d *dedupIndex) add(k message.DedupKey) {
	if d.window > 0 {
		d.cur[k] = struct{}{}
	}
}

func (d *dedupIndex) remove(k message.DedupKey) {
	delete(d.cur, k)
	delete(d.prev, k)
}

func (d *dedupIndex) len() int { return len(d.cur) + len(d.prev) }
