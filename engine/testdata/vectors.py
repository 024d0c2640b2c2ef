#!/usr/bin/env python3
"""Independent computation of the PSAV test vectors of engine/vectors_test.go.

Written from DESIGN §2.3–2.5 alone, sharing no code with the Go engine:
SipHash-2-4 straight from the SipHash paper (checked against the paper's own
test vector), the state machine with Python's hmac, and the tagged packets
assembled field by field. Run it to regenerate the constants:

    python3 engine/testdata/vectors.py
"""
import hashlib, hmac, ipaddress, struct

M = (1 << 64) - 1
def rotl(x, b): return ((x << b) | (x >> (64 - b))) & M

def siphash24(key: bytes, msg: bytes) -> int:
    k0, k1 = struct.unpack('<QQ', key)
    v0, v1 = k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d
    v2, v3 = k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573
    def rnd():
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & M; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
        v2 = (v2 + v3) & M; v3 = rotl(v3, 16); v3 ^= v2
        v0 = (v0 + v3) & M; v3 = rotl(v3, 21); v3 ^= v0
        v2 = (v2 + v1) & M; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
    n = len(msg)
    tail = msg[n - n % 8:] + b'\0' * (7 - n % 8) + bytes([n & 0xff])
    for i in range(0, n - n % 8, 8):
        m, = struct.unpack('<Q', msg[i:i+8]); v3 ^= m; rnd(); rnd(); v0 ^= m
    m, = struct.unpack('<Q', tail); v3 ^= m; rnd(); rnd(); v0 ^= m
    v2 ^= 0xff
    for _ in range(4): rnd()
    return v0 ^ v1 ^ v2 ^ v3

# The paper's vector (Appendix A): key 00..0f, message 00..0e.
assert siphash24(bytes(range(16)), bytes(range(15))) == 0xa129ca6149be45e5

def next_state(s): return hmac.new(s, b'psav state', hashlib.sha256).digest()
def tag_key(s): return hmac.new(s, b'psav tag key', hashlib.sha256).digest()[:16]

S0, E0 = bytes(range(32)), 29000000
def key_at(e):
    s = S0
    for _ in range(e - E0): s = next_state(s)
    return tag_key(s)

E = E0 + 5
K = key_at(E)

def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

def a16(ip):
    a = ipaddress.ip_address(ip)
    return (b'\0' * 10 + b'\xff\xff' + a.packed) if a.version == 4 else a.packed

def tag_of(src, dst, first, plen, key=K):
    return siphash24(key, a16(src) + a16(dst) + bytes([first, plen]))

def opt_data(tag, epoch, plen):
    return bytes([0x71, 0]) + struct.pack('!Q', tag) + bytes([epoch % 256, plen])

ETH = bytes.fromhex('020000000002' '020000000001')
UDP_PAYLOAD = b'psav test'

def ipv4(src, dst, options=b'', ttl=64, proto=17, payload=b''):
    ihl = (20 + len(options)) // 4
    h = struct.pack('!BBHHHBBH4s4s', 0x40 | ihl, 0, 4 * ihl + len(payload), 0x1234, 0, ttl, proto, 0,
                    ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed) + options
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return h + payload

def udp(sport, dport, data): return struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data

def ipv6(src, dst, nh, payload, hlim=64):
    return struct.pack('!IHBB', 0x60000000, len(payload), nh, hlim) + \
        ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed + payload

def show(name, b): print('%s = "%s"' % (name, b.hex()))

print('// key K(e0+5) =', K.hex(), ' K(e0) =', key_at(E0).hex())
# 1. IPv4/UDP, no options.
src4, dst4 = '198.51.100.10', '203.0.113.10'
u = udp(4242, 53, UDP_PAYLOAD)
t = tag_of(src4, dst4, u[0], 24)
print('// v4 tag = %016x' % t)
show('v4In', ETH + b'\x08\x00' + ipv4(src4, dst4, payload=u))
show('v4Out', ETH + b'\x08\x00' + ipv4(src4, dst4, options=bytes([0x9e, 14]) + opt_data(t, E, 24) + b'\x01\x01', payload=u))
# 2. IPv4 with an existing option (Router Alert, 4 octets), ICMP echo.
icmp = bytes([8, 0, 0, 0, 0, 1, 0, 1]) + b'ping'
icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]
ra = bytes([0x94, 4, 0, 0])
t = tag_of(src4, dst4, icmp[0], 24)
show('v4OptIn', ETH + b'\x08\x00' + ipv4(src4, dst4, options=ra, proto=1, payload=icmp))
show('v4OptOut', ETH + b'\x08\x00' + ipv4(src4, dst4, options=ra + bytes([0x9e, 14]) + opt_data(t, E, 24) + b'\x01\x01', proto=1, payload=icmp))
# 3. IPv6/UDP, no extension headers: a new Destination Options header.
src6, dst6 = '2001:db8:1::10', '2001:db8:2::10'
t = tag_of(src6, dst6, u[0], 48)
show('v6In', ETH + b'\x86\xdd' + ipv6(src6, dst6, 17, u))
show('v6Out', ETH + b'\x86\xdd' + ipv6(src6, dst6, 60, bytes([17, 1, 0x3b, 12]) + opt_data(t, E, 48) + u))
# 4. IPv6 with Hop-by-Hop (Router Alert) then UDP: the new header goes after it.
hbh = bytes([60, 0, 5, 2, 0, 0, 1, 0])  # NH patched below
hbh_in = bytes([17]) + hbh[1:]
t = tag_of(src6, dst6, u[0], 48)
show('v6HbhIn', ETH + b'\x86\xdd' + ipv6(src6, dst6, 0, hbh_in + u))
show('v6HbhOut', ETH + b'\x86\xdd' + ipv6(src6, dst6, 0, bytes([60]) + hbh[1:] + bytes([17, 1, 0x3b, 12]) + opt_data(t, E, 48) + u))
# 5. IPv6 with an existing Destination Options header (PadN only, 8 octets):
#    the PSAV option is appended inside it, after a PadN(0).
do_in = bytes([17, 0, 1, 4, 0, 0, 0, 0])
do_out = bytes([17, 2, 1, 4, 0, 0, 0, 0, 1, 0, 0x3b, 12]) + opt_data(t, E, 48)
show('v6DoIn', ETH + b'\x86\xdd' + ipv6(src6, dst6, 60, do_in + u))
show('v6DoOut', ETH + b'\x86\xdd' + ipv6(src6, dst6, 60, do_out + u))
