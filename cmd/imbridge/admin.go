package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/imbridge/imbridge/config"
)

// adminClient reaches a running serve through its admin API (/v1/admin/…),
// for what serve owns: the spool and the maps (SPEC "Commands beside serve").
type adminClient struct {
	base  string // http://host:port
	token string
	http  *http.Client
}

// errServeUnreachable is findServe's answer when no serve answers: the
// command then does the work itself.
var errServeUnreachable = errors.New("no serve answers")

// serverURL is --server when given, else the configured listen address
// (a wildcard host is reached on loopback).
func serverURL(cfg config.Config, flagValue string) string {
	if flagValue != "" {
		return strings.TrimRight(flagValue, "/")
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return "http://" + cfg.Listen
	}
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// findServe returns a client of the serve running at --server (or listen),
// or errServeUnreachable when nothing answers there. A serve that answers
// but cannot be used (admin.token not set here, or not the same as serve's)
// is an error that says what to set: doing the work beside it would take
// what it owns.
func findServe(ctx context.Context, cfg config.Config, serverFlag string) (*adminClient, error) {
	c := &adminClient{base: serverURL(cfg, serverFlag), token: cfg.Admin.Token, http: &http.Client{}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	path := "/v1/admin/status"
	if c.token == "" {
		path = "/healthz"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, usageError("--server %s: %v", c.base, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return nil, fmt.Errorf("%w at %s", errServeUnreachable, c.base)
		}
		return nil, fmt.Errorf("reaching serve at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case c.token == "":
		return nil, &exitError{code: 2, err: fmt.Errorf("a serve is running at %s: set admin.token (IMBRIDGE_ADMIN_TOKEN) to the same value as serve's so this command goes through it", c.base)}
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, &exitError{code: 2, err: fmt.Errorf("serve at %s refused admin.token: set it to the same value as serve's", c.base)}
	case resp.StatusCode == http.StatusNotFound:
		return nil, &exitError{code: 2, err: fmt.Errorf("serve at %s has its admin API disabled: set admin.token in serve's configuration too", c.base)}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("serve at %s: admin status answered %s", c.base, resp.Status)
	}
	return c, nil
}

// httpError is a non-2xx answer of the admin API.
type httpError struct {
	Status int
	Msg    string
}

func (e *httpError) Error() string { return fmt.Sprintf("serve answered %d: %s", e.Status, e.Msg) }

// do sends body (JSON-encoded when it is not an io.Reader) to path and
// decodes a 2xx JSON answer into out (when not nil). Other answers are an
// *httpError carrying serve's {"error": …} message.
func (c *adminClient) do(ctx context.Context, method, path string, body any, out any) error {
	var r io.Reader
	contentType := "application/json"
	switch b := body.(type) {
	case nil:
	case io.Reader:
		r, contentType = b, "application/octet-stream"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if r != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("serve at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("serve at %s: reading the answer: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &httpError{Status: resp.StatusCode, Msg: msg}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("serve at %s: answer %q: %w", c.base, abbrev(data), err)
		}
	}
	return nil
}

func abbrev(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
