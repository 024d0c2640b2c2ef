// Package examples holds example deployments (TOML) and the test that keeps
// every one of them accepted by psavd check.
package examples
