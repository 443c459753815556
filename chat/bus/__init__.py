"""What links servers that share one room. Imported only when a server is started with --redis."""
