"""graphc's standalone runtime: loads `.gcm` module files and runs them without the frontend.

The module-file format and the loader arrive with the capture/IR issue. This package imports
`ir` (and, lazily, `codegen`), never `graphc`.
"""
