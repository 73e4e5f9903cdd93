"""The stages' logic, one module per stage notebook; each notebook cell calls one function."""
