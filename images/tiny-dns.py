"""A minimal DNS responder for images/check-image.sh, standing in for a cluster's DNS.

Usage: python3 images/tiny-dns.py ADDR PORT SUFFIX ANSWER
Answers A queries for names ending in SUFFIX (e.g. "svc.cluster.local") with ANSWER (an IPv4
address), AAAA queries for them with no records, and everything else with NXDOMAIN, so a client
resolves a short Service name only if it applied resolv.conf's search list as a pod does.
Logs each query to stderr. Runs until killed; check-image.sh runs it in a network namespace.
"""

import socket
import struct
import sys

QTYPE_A = 1


def parse_question(packet):
    """Return (name, qtype, end offset of the question) of the first question."""
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    qtype, _qclass = struct.unpack("!HH", packet[offset + 1 : offset + 5])
    return ".".join(labels).lower(), qtype, offset + 5


def answer(packet, suffix, address):
    """Build the response to one query packet."""
    ident, _flags, qdcount = struct.unpack("!HHH", packet[:6])
    name, qtype, end = parse_question(packet)
    known = qdcount == 1 and (name == suffix or name.endswith("." + suffix))
    rcode = 0 if known else 3  # NOERROR or NXDOMAIN
    records = b""
    if known and qtype == QTYPE_A:
        # Name as a pointer to the question (offset 12), type A, class IN, TTL 5 s, 4 bytes.
        records = struct.pack("!HHHIH", 0xC00C, QTYPE_A, 1, 5, 4) + socket.inet_aton(address)
    flags = 0x8180 | rcode  # response, recursion desired and available
    header = struct.pack("!HHHHHH", ident, flags, 1, 1 if records else 0, 0, 0)
    print(f"tiny-dns: {name} type {qtype} -> rcode {rcode}", file=sys.stderr, flush=True)
    return header + packet[12:end] + records


def main():
    addr, port, suffix, address = sys.argv[1], int(sys.argv[2]), sys.argv[3].lower(), sys.argv[4]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    print("tiny-dns: ready", file=sys.stderr, flush=True)
    while True:
        packet, peer = sock.recvfrom(512)
        try:
            sock.sendto(answer(packet, suffix, address), peer)
        except (IndexError, UnicodeDecodeError, struct.error) as err:
            print(f"tiny-dns: malformed query from {peer}: {err}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
