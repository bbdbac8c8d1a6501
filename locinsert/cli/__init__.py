"""The `locinsert` command line. One module per subcommand; see main.py."""
