"""The floor both programs stand on: the wire protocols and the tar stream, without I/O of
their own and without imports from the rest of hostlink."""
