# /etc/conf.d/pacmesh: the ports pacmesh-ports.service opens in the host
# firewall while pacmeshd runs. Keep them in step with
# /etc/pacmesh/pacmeshd.toml; then `systemctl reload pacmesh-ports`.
# (Read as shell variables by /usr/lib/pacmesh/pacmesh-ports.)

# UDP port of QUIC peer links (pacmeshd.toml: quic_listen).
QUIC_PORT=15680

# UDP port of mDNS (always 5353 unless no_mdns; harmless to keep open).
MDNS_PORT=5353

# TCP port of HTTP for hosts without pacmesh, opened only with SERVE_LAN=yes
# (pacmeshd.toml: serve_lan = true).
HTTP_PORT=15680
SERVE_LAN=no

# Who may reach the ports. lan: only sources on this host's own networks
# (the networks of its interfaces' addresses, IPv4 and IPv6) and
# link-local addresses; any: every source, which on a host with a public
# address means the internet. The networks are read when the ports are
# opened: after joining another network, `systemctl reload pacmesh-ports`.
SOURCES=lan

# Interfaces to open the ports on, separated by spaces; empty = every
# interface. E.g. INTERFACES="eth0 wlan0" to keep them shut on a VPN or WAN
# (with SOURCES=lan, only to those interfaces' own networks).
INTERFACES=""
