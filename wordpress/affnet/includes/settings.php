<?php
/**
 * Settings → affnet: the affnet address and the publisher's API key, through the Settings API
 * (options.php checks the nonce and manage_options). The key is never printed back.
 *
 * @package affnet
 */

defined( 'ABSPATH' ) || exit;

/**
 * Adds Settings → affnet.
 */
function affnet_settings_menu() {
	add_options_page(
		__( 'affnet settings', 'affnet' ),
		__( 'affnet', 'affnet' ),
		'manage_options',
		'affnet',
		'affnet_settings_page'
	);
}
add_action( 'admin_menu', 'affnet_settings_menu' );

/**
 * Registers the two options, their sanitising and the page's fields.
 */
function affnet_register_settings() {
	register_setting(
		'affnet',
		'affnet_base_url',
		array(
			'type'              => 'string',
			'sanitize_callback' => 'affnet_sanitize_base_url',
			'default'           => '',
			'show_in_rest'      => false,
		)
	);
	register_setting(
		'affnet',
		'affnet_api_key',
		array(
			'type'              => 'string',
			'sanitize_callback' => 'affnet_sanitize_api_key',
			'default'           => '',
			'show_in_rest'      => false,
		)
	);
	add_settings_section( 'affnet_main', '', '__return_false', 'affnet' );
	add_settings_field(
		'affnet_base_url',
		__( 'affnet address', 'affnet' ),
		'affnet_field_base_url',
		'affnet',
		'affnet_main',
		array( 'label_for' => 'affnet_base_url' )
	);
	add_settings_field(
		'affnet_api_key',
		__( 'API key', 'affnet' ),
		'affnet_field_api_key',
		'affnet',
		'affnet_main',
		array( 'label_for' => 'affnet_api_key' )
	);
}
add_action( 'admin_init', 'affnet_register_settings' );

/**
 * True while options.php saves this page's form (not when code calls update_option()).
 *
 * @return bool
 */
function affnet_saving_form() {
	// options.php has checked the nonce ("affnet-options") and the capability before sanitising.
	return isset( $_POST['option_page'] ) && 'affnet' === $_POST['option_page']; // phpcs:ignore WordPress.Security.NonceVerification.Missing
}

/**
 * The affnet address: an http(s) URL without user name, query or fragment, stored without a
 * trailing slash. A refused value keeps the saved one and says why.
 *
 * @param mixed $value The submitted address.
 * @return string
 */
function affnet_sanitize_base_url( $value ) {
	$old   = (string) get_option( 'affnet_base_url', '' );
	$value = is_string( $value ) ? trim( $value ) : '';
	if ( '' === $value ) {
		return '';
	}
	$parts = wp_parse_url( $value );
	$ok    = is_array( $parts )
		&& isset( $parts['scheme'], $parts['host'] )
		&& in_array( strtolower( $parts['scheme'] ), array( 'http', 'https' ), true )
		&& ! isset( $parts['user'] )
		&& ! isset( $parts['pass'] )
		&& ! isset( $parts['query'] )
		&& ! isset( $parts['fragment'] )
		&& 1 === preg_match( '/^[A-Za-z0-9.\-\[\]:]+$/', $parts['host'] )
		&& ! preg_match( '/[\s"\'<>\\\\]/', $value );
	if ( ! $ok ) {
		add_settings_error(
			'affnet_base_url',
			'affnet_bad_url',
			__( 'The affnet address must be a web address such as https://affnet.example.com.', 'affnet' )
		);
		return $old;
	}
	return untrailingslashit( esc_url_raw( $value, array( 'http', 'https' ) ) );
}

/**
 * The API key: an empty submission keeps the saved key, the "remove the key" box clears it.
 *
 * @param mixed $value The submitted key.
 * @return string
 */
function affnet_sanitize_api_key( $value ) {
	$old   = (string) get_option( 'affnet_api_key', '' );
	$value = is_string( $value ) ? trim( $value ) : '';
	if ( affnet_saving_form() ) {
		if ( ! empty( $_POST['affnet_remove_key'] ) ) { // phpcs:ignore WordPress.Security.NonceVerification.Missing
			return '';
		}
		if ( '' === $value ) {
			return $old;
		}
	}
	if ( '' !== $value && ! preg_match( '/^[\x21-\x7e]{1,200}$/', $value ) ) {
		add_settings_error( 'affnet_api_key', 'affnet_bad_key', __( 'That does not look like an affnet API key: it was not saved.', 'affnet' ) );
		return $old;
	}
	return $value;
}

/**
 * Forgets the cached slot list when the address or the key changes.
 */
function affnet_forget_slots() {
	delete_transient( 'affnet_slots' );
}
add_action( 'update_option_affnet_base_url', 'affnet_forget_slots' );
add_action( 'update_option_affnet_api_key', 'affnet_forget_slots' );

/**
 * The address field.
 */
function affnet_field_base_url() {
	printf(
		'<input type="url" class="regular-text code" id="affnet_base_url" name="affnet_base_url" value="%s" placeholder="https://affnet.example.com">',
		esc_attr( (string) get_option( 'affnet_base_url', '' ) )
	);
	echo '<p class="description">' . esc_html__( 'The address of the affnet you publish with, as in your browser\'s address bar.', 'affnet' ) . '</p>';
}

/**
 * The key field: always empty, so the key is never printed back.
 */
function affnet_field_api_key() {
	$saved = '' !== (string) get_option( 'affnet_api_key', '' );
	echo '<input type="password" class="regular-text" id="affnet_api_key" name="affnet_api_key" value="" autocomplete="new-password">';
	if ( $saved ) {
		echo '<p class="description">' . esc_html__( 'A key is saved. Leave the field empty to keep it, or type a new one to replace it.', 'affnet' ) . '</p>';
		echo '<p><label><input type="checkbox" name="affnet_remove_key" value="1"> ' . esc_html__( 'Remove the key', 'affnet' ) . '</label></p>';
	} else {
		echo '<p class="description">' . esc_html__( 'Create a key on affnet under API keys (a publisher key), then paste it here.', 'affnet' ) . '</p>';
	}
}

/**
 * The page: the form and, when both settings are saved, whether affnet answers with them.
 */
function affnet_settings_page() {
	if ( ! current_user_can( 'manage_options' ) ) {
		return;
	}
	echo '<div class="wrap"><h1>' . esc_html__( 'affnet settings', 'affnet' ) . '</h1>';
	if ( Affnet_Api::is_configured() ) {
		$check = Affnet_Api::check();
		if ( is_wp_error( $check ) ) {
			echo '<div class="notice notice-error inline"><p>' . esc_html__( 'Connection check:', 'affnet' ) . ' ' . esc_html( $check->get_error_message() ) . '</p></div>';
		} else {
			echo '<div class="notice notice-success inline"><p>' . esc_html__( 'Connection check: OK, affnet accepts the key.', 'affnet' ) . '</p></div>';
		}
	}
	echo '<form action="options.php" method="post">';
	settings_fields( 'affnet' );
	do_settings_sections( 'affnet' );
	submit_button();
	echo '</form>';
	echo '<p>' . esc_html__( 'In the block editor, add the "affnet ad slot" or "affnet tracked link" block. In the classic editor, use the shortcode [affnet_slot key="YOUR-SLOT-KEY"].', 'affnet' ) . '</p>';
	echo '</div>';
}
