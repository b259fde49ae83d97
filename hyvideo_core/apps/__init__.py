"""Recipes that compose the core stages into whole applications (text-to-video, …).
Apps import core; core never imports apps."""
