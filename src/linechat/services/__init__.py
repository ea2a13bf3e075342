"""Services: what a server says. Each knows lines, never sockets, TLS or flags."""
