<?php
/**
 * Plugin Name:       affnet
 * Description:       Ad slots and tracked links from your affnet publisher account: a block and a shortcode that print the ad slot from the server (so Authors and Contributors can use them), and a block that builds tracked links with sub-IDs.
 * Version:           1.0.0
 * Requires at least: 6.1
 * Requires PHP:      7.4
 * Author:            affnet
 * License:           GPL-2.0-or-later
 * License URI:       https://www.gnu.org/licenses/gpl-2.0.html
 * Text Domain:       affnet
 * Domain Path:       /languages
 *
 * @package affnet
 */

defined( 'ABSPATH' ) || exit;

define( 'AFFNET_VERSION', '1.0.0' );
define( 'AFFNET_FILE', __FILE__ );
define( 'AFFNET_DIR', plugin_dir_path( __FILE__ ) );

/**
 * Loads the French and Italian translations (languages/affnet-<locale>.mo). Hooked before the
 * includes hook their own `init` work, so block titles are registered already translated.
 */
function affnet_load_textdomain() {
	load_plugin_textdomain( 'affnet', false, dirname( plugin_basename( __FILE__ ) ) . '/languages' );
}
add_action( 'init', 'affnet_load_textdomain' );

require_once AFFNET_DIR . 'includes/class-affnet-api.php';
require_once AFFNET_DIR . 'includes/render.php';
require_once AFFNET_DIR . 'includes/settings.php';
require_once AFFNET_DIR . 'includes/rest.php';
require_once AFFNET_DIR . 'includes/blocks.php';
