"""
Tests for L{socks_twisted._wire}, the sans-I/O SOCKS wire layer.
"""
