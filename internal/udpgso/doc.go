// Package udpgso builds the control message of UDP segmentation offload
// (Linux's UDP_SEGMENT socket option, 4.18): one sendmsg of several
// equal-size datagrams to one destination, taken through the IP stack once
// and cut into datagrams at the device or at the receiving socket. Used by
// the Map-Server's reply path and by the Map-Server load generator.
// Elsewhere Available is false and Append adds nothing.
package udpgso
