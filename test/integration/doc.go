// Package integration holds the end-to-end tests of psavd: they build the
// lab's topology (deploy/lab) in network namespaces, run the real psavd
// binary on the ABR nodes over AF_XDP, and judge the packets on the wires.
// They need root and AF_XDP and skip cleanly without them.
package integration
