package main

import (
	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/handler"
	"github.com/imbridge/imbridge/source/easemob"
	"github.com/imbridge/imbridge/source/native"
	"github.com/imbridge/imbridge/source/rongcloud"
	"github.com/imbridge/imbridge/source/tencent"
	"github.com/imbridge/imbridge/source/yunxin"
)

// enabledSources are the callback sources whose secret is configured; the
// others answer 404.
func enabledSources(c config.Sources) []handler.Source {
	var out []handler.Source
	if c.Native.Token != "" {
		out = append(out, native.New(c.Native.Token))
	}
	if c.Easemob.Secret != "" {
		out = append(out, easemob.New(c.Easemob.Secret, c.Easemob.MaxSkew))
	}
	if c.Tencent.Token != "" {
		out = append(out, tencent.New(c.Tencent.Token, c.Tencent.SDKAppID, c.Tencent.MaxSkew))
	}
	if c.RongCloud.AppSecret != "" {
		out = append(out, rongcloud.New(c.RongCloud.AppSecret, c.RongCloud.MaxSkew))
	}
	if c.Yunxin.AppSecret != "" {
		out = append(out, yunxin.New(c.Yunxin.AppSecret, c.Yunxin.MaxSkew))
	}
	return out
}
