#!/bin/sh
# Prepare a SPAN/tap interface for passive capture: link up, promiscuous, no IPv4/IPv6 address,
# no IPv6 autoconfiguration, receive offloads off. Idempotent; run as root.
#
#   span-interface.sh eth1          # or: span-interface.sh eth1 9000 (jumbo-frame mirror)
#
# Why: an address would make the host answer (ARP, neighbour discovery, DHCP) on a port that
# must stay silent; promiscuous mode accepts frames addressed to other hosts' MACs; GRO/LRO merge
# segments into super-frames larger than the snap length and hide the real segment boundaries.
set -eu

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ] || [ -z "$1" ]; then
  echo "usage: $0 INTERFACE [MTU]" >&2
  exit 2
fi
iface="$1"
mtu="${2:-}"
case "${mtu}" in
  *[!0-9]*)
    echo "span-interface: MTU must be a number: ${mtu}" >&2
    exit 2
    ;;
esac
if [ ! -e "/sys/class/net/${iface}" ]; then
  echo "span-interface: no interface named ${iface}" >&2
  exit 1
fi

# IPv6 off first, so bringing the link up does not autoconfigure a link-local address.
if [ -w "/proc/sys/net/ipv6/conf/${iface}/disable_ipv6" ]; then
  sysctl -q -w "net.ipv6.conf.${iface}.disable_ipv6=1"
  sysctl -q -w "net.ipv6.conf.${iface}.accept_ra=0"
  sysctl -q -w "net.ipv6.conf.${iface}.autoconf=0"
fi
# ARP off: the host never answers on the monitoring port.
ip link set dev "${iface}" arp off
ip address flush dev "${iface}"
# Frames longer than the MTU are dropped by most NICs: a mirror of a jumbo-frame network
# needs the larger MTU here too.
if [ -n "${mtu}" ]; then
  ip link set dev "${iface}" mtu "${mtu}"
fi
ip link set dev "${iface}" up promisc on

# Offloads are a per-driver matter: try each one and report what the driver refused.
if command -v ethtool >/dev/null 2>&1; then
  for feature in gro lro; do
    ethtool -K "${iface}" "${feature}" off 2>/dev/null \
      || echo "span-interface: ${iface}: driver kept ${feature} (ethtool -K ${feature} off failed)" >&2
  done
else
  echo "span-interface: ethtool not installed; receive offloads left as they are" >&2
fi

ip -details link show dev "${iface}"
