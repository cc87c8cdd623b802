<?php
/**
 * Deleting the plugin forgets its settings (the affnet address and the API key) and its cache.
 *
 * @package affnet
 */

defined( 'ABSPATH' ) || exit;
defined( 'WP_UNINSTALL_PLUGIN' ) || exit;

delete_option( 'affnet_base_url' );
delete_option( 'affnet_api_key' );
delete_transient( 'affnet_slots' );
