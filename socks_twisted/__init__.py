"""SOCKS4, SOCKS4a and SOCKS5 for Twisted: a server and client endpoints."""
