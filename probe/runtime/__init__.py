"""Process-wide runtime settings that entry points apply once: the malloc heap policy and the CPU thread policy."""
