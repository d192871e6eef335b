/* Unit tests: register maps and the register codec.
 *
 * Expected wire words are literals: the DTSU666 vectors from
 * shared/reference/register-maps.md 1.6 / Appendix A, the others worked out
 * by hand (and checked with Python's struct module), never produced by our
 * encoder. */
#include "wb-private.h"

#include <glib/gstdio.h>
#include <math.h>

static WbMap *dtsu;

static void assert_encodes(const char *name, guint address, double value, guint16 w0, guint16 w1)
{
    const WbMapRegister *reg = NULL;
    for (guint i = 0; i < wb_map_get_n_registers(dtsu); i++) {
        const WbMapRegister *r = wb_map_get_register(dtsu, i);
        if (wb_map_register_get_address(r) == address)
            reg = r;
    }
    g_assert_nonnull(reg);
    g_assert_cmpstr(wb_map_register_get_name(reg), ==, name);
    guint16 words[4] = {0};
    g_autoptr(GError) error = NULL;
    g_assert_true(wb_map_register_encode(reg, value, words, &error));
    g_assert_no_error(error);
    if (words[0] != w0 || (wb_map_register_get_size(reg) > 1 && words[1] != w1))
        g_error("%s = %g encoded as %04X %04X, expected %04X %04X", name, value, words[0], words[1], w0, w1);
}

static void test_dtsu666_vectors(void)
{
    assert_encodes("Ua", 0x2006, 230.9, 0x4510, 0x5000);
    assert_encodes("Ub", 0x2008, 231.1, 0x4510, 0x7000);
    assert_encodes("Uc", 0x200A, 230.7, 0x4510, 0x3000);
    assert_encodes("Ia", 0x200C, 5.25, 0x45A4, 0x1000);
    assert_encodes("Ib", 0x200E, 4.7, 0x4592, 0xE000);
    assert_encodes("Ic", 0x2010, 4.1, 0x4580, 0x2000);
    assert_encodes("Pt", 0x2012, 2850, 0x46DE, 0xA800);
    assert_encodes("Pa", 0x2014, 1048, 0x4623, 0xC000);
    assert_encodes("Pb", 0x2016, 1089, 0x462A, 0x2800);
    assert_encodes("Pc", 0x2018, 713, 0x45DE, 0xD000);
    assert_encodes("PFt", 0x202A, 0.92, 0x4466, 0x0000);
    assert_encodes("Freq", 0x2044, 50.015, 0x459C, 0x4C00);
    assert_encodes("EpTotal", 0x4000, 5678.234, 0x45B1, 0x71DF);
    assert_encodes("Pt", 0x2012, -1500, 0xC66A, 0x6000);
    assert_encodes("Uab", 0x2000, 400.0, 0x457A, 0x0000);
    assert_encodes("Freq", 0x2044, 50.0, 0x459C, 0x4000);
    assert_encodes("PFt", 0x202A, 1.0, 0x447A, 0x0000);
    /* the engineering-unit block holds kW: 2850 W is 2.85 (0x40366666) */
    assert_encodes("Pt", 0x151C, 2850, 0x4036, 0x6666);
    /* 16-bit parameters */
    assert_encodes("UrAt", 0x0007, 10, 0x000A, 0);
    assert_encodes("REV.", 0x0000, 204, 0x00CC, 0);
}

static void test_dtsu666_map(void)
{
    g_assert_cmpstr(wb_map_get_name(dtsu), ==, "chint-dtsu666");
    g_assert_cmpstr(wb_map_get_model(dtsu), ==, "CHINT DTSU666");
    g_assert_cmpuint(wb_map_get_default_unit_id(dtsu), ==, 1);
    const WbMapRegister *ua = wb_map_find_register(dtsu, "Ua");
    g_assert_cmpuint(wb_map_register_get_address(ua), ==, 0x1510); /* first by address: the kV block */
    g_assert_cmpstr(wb_map_register_get_key(ua), ==, "voltage-l1");
    g_assert_cmpstr(wb_map_register_get_unit(ua), ==, "V");
    g_assert_cmpstr(wb_map_register_get_default(ua), ==, "nominal-voltage");
    const WbMapRegister *addr = wb_map_find_register(dtsu, "Addr");
    g_assert_true(wb_map_register_is_writable(addr));
    g_assert_null(wb_map_register_get_quantity(addr));
}

/* A map of every type and both word orders, for the codec. */
static const char codec_map[] =
    "[map]\nformat = 1\nmodel = codec\nblocks = 0-99\nword-order = low-first\n"
    "[holding 0]\nname = u16\ntype = u16\nscale = 0.1\nunit = V\nquantity = voltage\n"
    "[holding 1]\nname = s16\ntype = s16\nquantity = power\n"
    "[holding 2]\nname = u32\ntype = u32\nquantity = energy-import\nscale = 0.1\nword-order = high-first\n"
    "[holding 4]\nname = s32\ntype = s32\nquantity = power\n"
    "[holding 6]\nname = f32\ntype = f32\nquantity = power\n"
    "[holding 8]\nname = offset\ntype = s16\nquantity = temperature\nscale = 0.1\noffset = -40\n";

static WbMap *load_text(const char *text, char **error_message)
{
    g_autofree char *dir = g_dir_make_tmp("wb-map-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "test.map", NULL);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    g_autoptr(GError) error = NULL;
    WbMap *map = wb_map_load_file(path, &error);
    if (error_message)
        *error_message = error ? g_strdup(error->message) : NULL;
    g_unlink(path);
    g_rmdir(dir);
    return map;
}

static void encode(WbMap *map, const char *name, double value, guint16 *words)
{
    const WbMapRegister *r = wb_map_find_register(map, name);
    g_autoptr(GError) error = NULL;
    memset(words, 0, 4 * sizeof(guint16));
    g_assert_true(wb_map_register_encode(r, value, words, &error));
    g_assert_no_error(error);
    /* decoding gives the value back (to the register's resolution) */
    double back = wb_map_register_decode(r, words);
    g_assert_cmpfloat(fabs(back - value), <, 1e-3 * MAX(1.0, fabs(value)));
}

static void test_codec(void)
{
    g_autofree char *msg = NULL;
    g_autoptr(WbMap) map = load_text(codec_map, &msg);
    g_assert_null(msg);
    guint16 w[4];
    encode(map, "u16", 230.9, w); /* 2309 */
    g_assert_cmpuint(w[0], ==, 0x0905);
    encode(map, "s16", -1500, w);
    g_assert_cmpuint(w[0], ==, 0xFA24);
    encode(map, "u32", 12345678.9, w); /* 123456789 = 0x075BCD15, high word first here */
    g_assert_cmpuint(w[0], ==, 0x075B);
    g_assert_cmpuint(w[1], ==, 0xCD15);
    encode(map, "s32", -12345, w); /* 0xFFFFCFC7, low word first (the map's order) */
    g_assert_cmpuint(w[0], ==, 0xCFC7);
    g_assert_cmpuint(w[1], ==, 0xFFFF);
    encode(map, "f32", 12.5, w); /* 0x41480000, low word first */
    g_assert_cmpuint(w[0], ==, 0x0000);
    g_assert_cmpuint(w[1], ==, 0x4148);
    encode(map, "offset", 21.5, w); /* (21.5 + 40) / 0.1 = 615 */
    g_assert_cmpuint(w[0], ==, 615);

    /* does not fit: an error naming the register, never a wrap */
    g_autoptr(GError) error = NULL;
    g_assert_false(wb_map_register_encode(wb_map_find_register(map, "u16"), 6553.6, w, &error));
    g_assert_nonnull(strstr(error->message, "u16"));
    g_assert_nonnull(strstr(error->message, "does not fit"));
    g_clear_error(&error);
    g_assert_false(wb_map_register_encode(wb_map_find_register(map, "u16"), -0.1, w, &error));
    g_clear_error(&error);
    g_assert_false(wb_map_register_encode(wb_map_find_register(map, "s16"), 32768, w, &error));
    g_clear_error(&error);
    g_assert_false(wb_map_register_encode(wb_map_find_register(map, "f32"), 1e39, w, &error));
    g_clear_error(&error);
    g_assert_false(wb_map_register_encode(wb_map_find_register(map, "f32"), NAN, w, &error));
    g_clear_error(&error);
    /* the largest values that do fit */
    g_assert_true(wb_map_register_encode(wb_map_find_register(map, "u16"), 6553.5, w, NULL));
    g_assert_cmpuint(w[0], ==, 0xFFFF);
    g_assert_true(wb_map_register_encode(wb_map_find_register(map, "s16"), -32768, w, NULL));
    g_assert_cmpuint(w[0], ==, 0x8000);
}

typedef struct {
    const char *body;   /* after a valid [map] header */
    int line;
    const char *message;
} BadMap;

#define HEAD "[map]\nformat = 1\nblocks = 0-9\n"
static const BadMap bad_maps[] = {
    {HEAD "[holding 0]\nname = a\ntype = u16\ncolour = red\n", 7, "unknown key 'colour'"},
    {HEAD "[holding 0]\nname = a\ntype = u24\n", 6, "type: expected one of u16, s16, u32, s32, f32, got \"u24\""},
    {HEAD "[holding 0]\nname = a\ntype = u32\n[holding 1]\nname = b\ntype = u16\n", 7,
     "register b at 0x0001 overlaps a at 0x0000"},
    {HEAD "[holding 20]\nname = a\ntype = u16\n", 4, "lies outside every block"},
    {HEAD "[holding 9]\nname = a\ntype = u32\n", 4, "lies outside every block"},
    {HEAD "[holding 0]\nname = a\ntype = f32\nquantity = power\nunit = kW\n", 8,
     "a power register's unit is \"W\", got \"kW\""},
    {HEAD "[holding 0]\nname = a\ntype = f32\nquantity = torque\n", 7, "quantity: \"torque\" is not in quantities.h"},
    {HEAD "[holding 0]\nname = a\ntype = u16\nvalue = 70000\n", 7, "value:"},
    {HEAD "[holding 0]\nname = a\ntype = u16\nchannel = l4\nquantity = voltage\n", 7, "channel: expected"},
    {HEAD "[input 0]\nname = a\ntype = u16\n", 4, "format 1 has holding registers only"},
    {"[map]\nformat = 2\nblocks = 0-9\n", 2, "this is format 2; this wattbridge reads format 1"},
    {"[map]\nformat = 1\n", 1, "missing 'blocks'"},
    {"[map]\nformat = 1\nblocks = ;\n", 3, "blocks: no address range given"},
    {HEAD "[holding 0]\nname = a\ntype = u16\n[holding 0]\nname = b\n", 7, "section [holding 0] repeated"},
};

static void test_bad_maps(void)
{
    for (gsize i = 0; i < G_N_ELEMENTS(bad_maps); i++) {
        g_autofree char *msg = NULL;
        WbMap *map = load_text(bad_maps[i].body, &msg);
        g_assert_null(map);
        g_test_message("%s", msg);
        g_autofree char *where = g_strdup_printf("test.map:%d: ", bad_maps[i].line);
        if (!strstr(msg, where) || !strstr(msg, bad_maps[i].message))
            g_error("case %zu: expected \"%s...%s\" in: %s", i, where, bad_maps[i].message, msg);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autofree char *path = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "data", "devices", "chint-dtsu666.map", NULL);
    g_autoptr(GError) error = NULL;
    dtsu = wb_map_load_file(path, &error);
    g_assert_no_error(error);
    g_test_add_func("/map/dtsu666/vectors", test_dtsu666_vectors);
    g_test_add_func("/map/dtsu666/registers", test_dtsu666_map);
    g_test_add_func("/map/codec", test_codec);
    g_test_add_func("/map/broken", test_bad_maps);
    int rc = g_test_run();
    wb_map_unref(dtsu);
    return rc;
}
