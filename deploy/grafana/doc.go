// Package grafana holds psavd's Grafana dashboard (psavd.json) and the test
// that keeps every series it queries among those psavd exports.
package grafana
