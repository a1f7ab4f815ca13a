"""The multi-domain rig, its test CA, the seed-story scenarios and benchmarks.

Arrives with the rig and benchmark issues; the package exists so the layout is complete.
"""
