"""Looking at the topology: the StackPack's views as STQL queries, and the offline topology page."""
