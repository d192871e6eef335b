/* wattbridge plugin ABI: the one header a plugin includes.
 *
 * Build a plugin against the installed headers with
 *   pkg-config --cflags --libs wattbridge-plugin
 * link it with -Wl,-z,defs, and install <name>.so into the directory
 *   pkg-config --variable=pluginsdir wattbridge-plugin
 * See api/README.md for a complete minimal plugin.
 */
#pragma once

#include <glib.h>

#include <wattbridge/wb-version.h>
#include <wattbridge/wb-types.h>
#include <wattbridge/quantities.h>
#include <wattbridge/wb-plugin-desc.h>
#include <wattbridge/wb-host.h>
#include <wattbridge/wb-modbus.h>
