<?php
/**
 * The client of affnet's publisher API: every call the plugin makes to affnet goes through here,
 * with the saved API key as a Bearer token.
 *
 * @package affnet
 */

defined( 'ABSPATH' ) || exit;

/**
 * Calls affnet's publisher API (/api/v1/publisher/...) with the key saved in Settings → affnet.
 */
class Affnet_Api {

	const TIMEOUT = 5;
	const PAGE    = 200; // affnet's largest page.
	const PAGES   = 10;  // At most this many pages are followed: 2,000 slots or campaigns.

	/**
	 * The affnet address saved in the settings, without a trailing slash ('' when unset).
	 *
	 * @return string
	 */
	public static function base_url() {
		$url = get_option( 'affnet_base_url', '' );
		return is_string( $url ) ? untrailingslashit( $url ) : '';
	}

	/**
	 * True when both the address and the API key are saved.
	 *
	 * @return bool
	 */
	public static function is_configured() {
		return '' !== self::base_url() && '' !== (string) get_option( 'affnet_api_key', '' );
	}

	/**
	 * One call to affnet's API.
	 *
	 * @param string     $method GET or POST.
	 * @param string     $path   Path under the affnet address, such as /api/v1/publisher/slots.
	 * @param array      $query  Query parameters.
	 * @param array|null $body   JSON body (POST).
	 * @return array|WP_Error The decoded JSON answer, or the error with affnet's own message and
	 *                        its HTTP status in the error data ('status').
	 */
	public static function request( $method, $path, $query = array(), $body = null ) {
		$base = self::base_url();
		$key  = (string) get_option( 'affnet_api_key', '' );
		if ( '' === $base || '' === $key ) {
			return new WP_Error(
				'affnet_not_configured',
				__( 'Save the affnet address and your API key in Settings → affnet first.', 'affnet' ),
				array( 'status' => 400 )
			);
		}
		$url = $base . $path;
		if ( $query ) {
			$url = add_query_arg( array_map( 'rawurlencode', $query ), $url );
		}
		$args = array(
			'method'      => $method,
			'timeout'     => self::TIMEOUT,
			'redirection' => 0,
			'headers'     => array(
				'Authorization'   => 'Bearer ' . $key,
				'Accept'          => 'application/json',
				'Accept-Language' => str_replace( '_', '-', determine_locale() ),
			),
		);
		if ( null !== $body ) {
			$args['headers']['Content-Type'] = 'application/json';
			$args['body']                    = wp_json_encode( $body );
		}
		$response = wp_remote_request( $url, $args );
		if ( is_wp_error( $response ) ) {
			return new WP_Error(
				'affnet_unreachable',
				/* translators: %s: the network error, such as "Connection refused". */
				sprintf( __( 'Could not reach affnet: %s', 'affnet' ), $response->get_error_message() ),
				array( 'status' => 502 )
			);
		}
		$status  = (int) wp_remote_retrieve_response_code( $response );
		$decoded = json_decode( wp_remote_retrieve_body( $response ), true );
		if ( $status < 200 || $status >= 300 ) {
			$error   = is_array( $decoded ) && isset( $decoded['error'] ) && is_array( $decoded['error'] ) ? $decoded['error'] : array();
			$message = isset( $error['message'] ) && is_string( $error['message'] ) ? $error['message'] : '';
			if ( '' === $message ) {
				/* translators: %d: an HTTP status code such as 500. */
				$message = sprintf( __( 'affnet answered with HTTP status %d.', 'affnet' ), $status );
			}
			$data = array( 'status' => $status );
			if ( isset( $error['field'] ) && is_string( $error['field'] ) ) {
				$data['field'] = $error['field']; // The refused value, such as "url" for the deep link.
			}
			return new WP_Error( 'affnet_refused', $message, $data );
		}
		if ( ! is_array( $decoded ) ) {
			return new WP_Error(
				'affnet_bad_answer',
				__( 'affnet answered with something other than JSON: is the affnet address right?', 'affnet' ),
				array( 'status' => 502 )
			);
		}
		return $decoded;
	}

	/**
	 * Every item of a paginated list (affnet's `items` and `next_cursor`).
	 *
	 * @param string $path  The list's path.
	 * @param array  $query Its filters.
	 * @return array|WP_Error
	 */
	public static function all( $path, $query = array() ) {
		$items = array();
		$query = array_merge( $query, array( 'limit' => (string) self::PAGE ) );
		for ( $i = 0; $i < self::PAGES; $i++ ) {
			$page = self::request( 'GET', $path, $query );
			if ( is_wp_error( $page ) ) {
				return $page;
			}
			if ( isset( $page['items'] ) && is_array( $page['items'] ) ) {
				$items = array_merge( $items, $page['items'] );
			}
			if ( empty( $page['next_cursor'] ) || ! is_string( $page['next_cursor'] ) ) {
				break;
			}
			$query['cursor'] = $page['next_cursor'];
		}
		return $items;
	}

	/**
	 * The publisher's ad slots, as affnet lists them (public_key, name, format, status, ...).
	 *
	 * @return array|WP_Error
	 */
	public static function slots() {
		return self::all( '/api/v1/publisher/slots' );
	}

	/**
	 * The campaigns the publisher is approved in.
	 *
	 * @return array|WP_Error
	 */
	public static function approved_campaigns() {
		return self::all( '/api/v1/publisher/campaigns', array( 'membership' => 'approved' ) );
	}

	/**
	 * Builds a tracked URL on the publisher's link in a campaign.
	 *
	 * @param array $link campaign_id, sub1..sub5 and url (the deep link).
	 * @return array|WP_Error affnet's LinkOut, with `tracked_url`.
	 */
	public static function create_link( $link ) {
		return self::request( 'POST', '/api/v1/publisher/links', array(), $link );
	}

	/**
	 * Checks the saved address and key with the smallest call there is.
	 *
	 * @return true|WP_Error
	 */
	public static function check() {
		$answer = self::request( 'GET', '/api/v1/publisher/slots', array( 'limit' => '1' ) );
		return is_wp_error( $answer ) ? $answer : true;
	}
}
