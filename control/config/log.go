package config

import (
	"go.uber.org/zap/zapcore"

	"github.com/psavd/psavd/control/config/schema"
)

// Log is [log].
type Log struct {
	Level zapcore.Level // debug, info (default), warn or error
	JSON  bool          // format = "json"; default "console"
}

func (c *Config) checkLog(k *checker, f *schema.File) {
	c.Log.Level = zapcore.InfoLevel
	if l := orDefault(k.set("log.level"), f.Log.Level, "info"); k.oneOf("log.level", l, "debug", "info", "warn", "error") {
		c.Log.Level, _ = zapcore.ParseLevel(l)
	}
	if v := orDefault(k.set("log.format"), f.Log.Format, "console"); k.oneOf("log.format", v, "console", "json") {
		c.Log.JSON = v == "json"
	}
}
