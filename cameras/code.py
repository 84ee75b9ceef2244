# camhub camera node: the board's entry point (the same file runs on a PC with `camhub node --sim --from DIR`).
from camhub_node import node

node.main()
