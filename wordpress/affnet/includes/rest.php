<?php
/**
 * The plugin's REST routes for the block editor (/wp-json/affnet/v1/...): the publisher's slots,
 * the campaigns they are approved in, and building a tracked link. Each calls affnet with the key
 * saved in the settings, which never reaches the browser.
 *
 * @package affnet
 */

defined( 'ABSPATH' ) || exit;

/**
 * Only people who can write posts use these routes (apiFetch sends WordPress's REST nonce).
 *
 * @return bool
 */
function affnet_rest_can_edit() {
	return current_user_can( 'edit_posts' );
}

/**
 * A sub-ID or deep link as typed: a string without control characters, trimmed.
 *
 * @param mixed $value The submitted value.
 * @return string
 */
function affnet_rest_text( $value ) {
	$value = is_scalar( $value ) ? (string) $value : '';
	return trim( preg_replace( '/[\x00-\x1f\x7f]/', '', $value ) );
}

/**
 * An affnet error as the REST answer: affnet's message, its status when it is a refusal (4xx),
 * 502 when affnet could not be asked; a refused key is the site's settings, not the editor's
 * sign-in, so it answers 400 rather than 401 or 403.
 *
 * @param WP_Error $error The client's error.
 * @return WP_Error
 */
function affnet_rest_error( $error ) {
	$data   = $error->get_error_data();
	$status = is_array( $data ) && isset( $data['status'] ) ? (int) $data['status'] : 502;
	if ( 401 === $status || 403 === $status ) {
		$status = 400;
	} elseif ( $status < 400 || $status >= 500 ) {
		$status = 502;
	}
	$out = array( 'status' => $status );
	if ( is_array( $data ) && isset( $data['field'] ) ) {
		$out['field'] = $data['field'];
	}
	return new WP_Error( $error->get_error_code(), $error->get_error_message(), $out );
}

/**
 * Registers the three routes.
 */
function affnet_register_rest_routes() {
	register_rest_route(
		'affnet/v1',
		'/slots',
		array(
			'methods'             => 'GET',
			'callback'            => 'affnet_rest_slots',
			'permission_callback' => 'affnet_rest_can_edit',
		)
	);
	register_rest_route(
		'affnet/v1',
		'/campaigns',
		array(
			'methods'             => 'GET',
			'callback'            => 'affnet_rest_campaigns',
			'permission_callback' => 'affnet_rest_can_edit',
		)
	);
	$text = array(
		'type'              => 'string',
		'default'           => '',
		'maxLength'         => 100,
		// With a sanitize_callback of its own, an argument is checked against its schema only if asked.
		'validate_callback' => 'rest_validate_request_arg',
		'sanitize_callback' => 'affnet_rest_text',
	);
	register_rest_route(
		'affnet/v1',
		'/links',
		array(
			'methods'             => 'POST',
			'callback'            => 'affnet_rest_links',
			'permission_callback' => 'affnet_rest_can_edit',
			'args'                => array(
				'campaign_id' => array(
					'type'              => 'integer',
					'required'          => true,
					'minimum'           => 1,
					'maximum'           => 2147483647,
					'validate_callback' => 'rest_validate_request_arg',
					'sanitize_callback' => 'absint',
				),
				'sub1'        => $text,
				'sub2'        => $text,
				'sub3'        => $text,
				'sub4'        => $text,
				'sub5'        => $text,
				'url'         => array_merge( $text, array( 'maxLength' => 2048 ) ),
			),
		)
	);
}
add_action( 'rest_api_init', 'affnet_register_rest_routes' );

/**
 * GET /affnet/v1/slots: the publisher's active slots (key, name, format).
 *
 * @return WP_REST_Response|WP_Error
 */
function affnet_rest_slots() {
	$slots = Affnet_Api::slots();
	if ( is_wp_error( $slots ) ) {
		return affnet_rest_error( $slots );
	}
	$out = array();
	foreach ( $slots as $slot ) {
		if ( ! is_array( $slot ) || ! isset( $slot['public_key'], $slot['format'] ) || ! affnet_valid_key( $slot['public_key'] ) ) {
			continue;
		}
		if ( isset( $slot['status'] ) && 'active' !== $slot['status'] ) {
			continue;
		}
		$out[] = array(
			'key'    => $slot['public_key'],
			'name'   => isset( $slot['name'] ) ? (string) $slot['name'] : $slot['public_key'],
			'format' => (string) $slot['format'],
		);
	}
	return rest_ensure_response( $out );
}

/**
 * GET /affnet/v1/campaigns: the campaigns the publisher is approved in (id, name).
 *
 * @return WP_REST_Response|WP_Error
 */
function affnet_rest_campaigns() {
	$campaigns = Affnet_Api::approved_campaigns();
	if ( is_wp_error( $campaigns ) ) {
		return affnet_rest_error( $campaigns );
	}
	$out = array();
	foreach ( $campaigns as $campaign ) {
		if ( is_array( $campaign ) && isset( $campaign['id'], $campaign['name'] ) ) {
			$out[] = array(
				'id'   => (int) $campaign['id'],
				'name' => (string) $campaign['name'],
			);
		}
	}
	return rest_ensure_response( $out );
}

/**
 * POST /affnet/v1/links: affnet builds the tracked URL (sub-IDs, deep link) and this answers it.
 *
 * @param WP_REST_Request $request The editor's request.
 * @return WP_REST_Response|WP_Error
 */
function affnet_rest_links( $request ) {
	$link = array( 'campaign_id' => (int) $request['campaign_id'] );
	foreach ( array( 'sub1', 'sub2', 'sub3', 'sub4', 'sub5', 'url' ) as $name ) {
		$link[ $name ] = (string) $request[ $name ];
	}
	$answer = Affnet_Api::create_link( $link );
	if ( is_wp_error( $answer ) ) {
		return affnet_rest_error( $answer );
	}
	if ( ! isset( $answer['tracked_url'] ) || ! affnet_is_tracked_url( $answer['tracked_url'] ) ) {
		return new WP_Error(
			'affnet_bad_answer',
			sprintf(
				/* translators: 1: the link affnet built, 2: the affnet address saved in the settings. */
				__( 'affnet built the link %1$s, which is not on the saved affnet address %2$s: save affnet\'s own address in Settings → affnet.', 'affnet' ),
				isset( $answer['tracked_url'] ) && is_string( $answer['tracked_url'] ) ? $answer['tracked_url'] : '',
				Affnet_Api::base_url()
			),
			array( 'status' => 502 )
		);
	}
	return rest_ensure_response( array( 'tracked_url' => $answer['tracked_url'] ) );
}
