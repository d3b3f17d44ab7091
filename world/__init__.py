"""The voxel world: blocks, sections, terrain, edits, block updates, physics,
the section codec and the SQLite store. Pure and synchronous, no networking."""
