"""Looking at motions: fingertip contacts, colours, and 3-D recordings for the Rerun viewer.

Sits right after the data stage (it reads clips and the hand skeleton only), so the
renderers and reports of later stages can use it.
"""
