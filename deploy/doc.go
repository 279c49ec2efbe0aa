// Package deploy holds no code: it is the folder of imbridge's deployment
// files (systemd units, an example configuration) and of the tests that keep
// them true — the units pass systemd-analyze verify and agree with each
// other and with serve, and the example names every configuration key.
package deploy
