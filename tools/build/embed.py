#!/usr/bin/env python3
"""Embeds a file into C as `const char NAME[]` and `const size_t NAME_len`
(used for the OpenAPI document served at /openapi.json)."""
import sys

src, out_c, out_h, name = sys.argv[1:5]
data = open(src, 'rb').read()
with open(out_h, 'w') as h:
    h.write('/* generated from %s */\n#pragma once\n#include <stddef.h>\n' % src.split('/')[-1])
    h.write('extern const char %s[];\nextern const size_t %s_len;\n' % (name, name))
with open(out_c, 'w') as c:
    c.write('/* generated */\n#include "%s"\n' % out_h.split('/')[-1])
    c.write('const char %s[] = {\n' % name)
    for i in range(0, len(data), 16):
        c.write('  ' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',\n')
    c.write('  0x00\n};\nconst size_t %s_len = %d;\n' % (name, len(data)))
