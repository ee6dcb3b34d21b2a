package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"

	"logship/aggregator"
	"logship/config"
)

// onHangup calls reload for every SIGHUP until ctx is done. It returns a
// function that stops listening and waits for a reload in progress.
func onHangup(ctx context.Context, reload func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				reload()
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		<-done
	}
}

// aggregatorReloader applies what a changed aggregator config can change
// while the server runs (retention), and says which other changes need a
// restart. A config that does not load is refused with its errors, and
// the running one stays.
type aggregatorReloader struct {
	path string
	cur  *config.Aggregator
	s    *aggregator.Server
	log  *slog.Logger
}

// live are the keys a reload applies; every other change needs a restart.
var aggregatorLiveKeys = map[string]bool{"retention_age": true, "retention_bytes": true}

func (r *aggregatorReloader) reload() {
	r.log.Info("reloading config (SIGHUP)", "config", r.path)
	c, err := config.LoadAggregator(r.path)
	if err != nil {
		r.log.Error("reload refused: the running config stays", "config", r.path, "err", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	changed := changedKeys(r.cur, c)
	if len(changed) == 0 {
		r.log.Info("reload: nothing changed")
		return
	}
	var restart []string
	live := false
	for _, k := range changed {
		if aggregatorLiveKeys[k] {
			live = true
		} else {
			restart = append(restart, k)
		}
	}
	if live {
		if err := r.s.SetRetention(c.RetentionAge.D(), int64(c.RetentionBytes)); err != nil {
			r.log.Error("reload refused: the running config stays", "err", err)
			return
		}
	}
	// What was applied becomes the running config; keys that need a
	// restart keep their running values, so they are reported again at
	// the next reload until the process restarts.
	next := *r.cur
	next.RetentionAge, next.RetentionBytes = c.RetentionAge, c.RetentionBytes
	r.cur = &next
	if len(restart) > 0 {
		r.log.Warn("reload: these keys changed but take effect only after a restart", "keys", strings.Join(restart, ","))
	}
	if live {
		r.log.Info("reload applied", "retention_age", c.RetentionAge.D(), "retention_bytes", int64(c.RetentionBytes))
	}
}

// changedKeys returns the toml keys of the top-level fields that differ.
func changedKeys[T any](a, b *T) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for i := range va.NumField() {
		tag := va.Type().Field(i).Tag.Get("toml")
		if tag == "" {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, tag)
		}
	}
	return out
}
