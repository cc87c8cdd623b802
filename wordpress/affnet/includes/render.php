<?php
/**
 * What the plugin prints in posts: the ad slot (placeholder, affnet's script and the no-JavaScript
 * image) and the tracked link. Printed from PHP, so WordPress's HTML filter (kses), which deletes
 * <script> from the posts of Authors and Contributors, never sees it.
 *
 * @package affnet
 */

defined( 'ABSPATH' ) || exit;

const AFFNET_SLOTS_TRANSIENT = 'affnet_slots';
const AFFNET_SLOTS_TTL       = 600; // The slot list is cached for 10 minutes.
const AFFNET_SLOTS_RETRY     = 60;  // An unknown key, or an affnet that did not answer, asks again after a minute.

/**
 * The slot formats and the room each takes (as affnet's SIZES): width and height in pixels,
 * width 0 for the native format, which takes the column's whole width.
 *
 * @return array<string, int[]>
 */
function affnet_slot_sizes() {
	return array(
		'300x250' => array( 300, 250 ),
		'728x90'  => array( 728, 90 ),
		'160x600' => array( 160, 600 ),
		'320x50'  => array( 320, 50 ),
		'native'  => array( 0, 120 ),
	);
}

/**
 * A slot key as affnet makes them: letters, digits, - and _ only.
 *
 * @param mixed $key The key to check.
 * @return bool
 */
function affnet_valid_key( $key ) {
	return is_string( $key ) && 1 === preg_match( '/^[A-Za-z0-9_-]{1,64}$/', $key );
}

/**
 * The slot's markup, on one line (wpautop adds no <br> or <p> inside it): a block-level wrapper
 * that keeps it in the content column, affnet's placeholder (sized at once, so the page never
 * shifts), the async script, and for image formats an image ad for readers without JavaScript.
 *
 * @param string $base   The affnet address, without a trailing slash.
 * @param string $key    The slot's public key (already checked).
 * @param string $format One of affnet_slot_sizes()'s keys.
 * @return string
 */
function affnet_slot_markup( $base, $key, $format ) {
	$sizes         = affnet_slot_sizes();
	list( $w, $h ) = $sizes[ $format ];
	$width         = $w ? $w . 'px' : '100%';
	$style         = 'display:block;width:' . $width . ';max-width:100%;height:' . $h . 'px;overflow:hidden';
	$html          = '<div class="affnet-slot-wrap">';
	$html         .= '<div class="affnet-slot" data-affnet-slot="' . esc_attr( $key ) . '" data-affnet-format="' . esc_attr( $format ) . '" style="' . esc_attr( $style ) . '"></div>';
	$html         .= '<script async src="' . esc_url( $base . '/static/embed.js' ) . '"></script>';
	if ( 'native' !== $format ) {
		$html .= '<noscript><a href="' . esc_url( $base . '/ads/n/' . $key . '/go' ) . '" rel="sponsored noopener" target="_blank">'
			. '<img src="' . esc_url( $base . '/ads/n/' . $key . '/img' ) . '" width="' . esc_attr( (string) $w ) . '" height="' . esc_attr( (string) $h ) . '" alt="' . esc_attr__( 'Advertisement', 'affnet' ) . '">'
			. '</a></noscript>';
	}
	return $html . '</div>';
}

/**
 * Why a slot or link is not shown: nothing a visitor sees (an HTML comment), a short visible note
 * for people who can edit posts.
 *
 * @param string $message The reason, in the reader's language.
 * @return string
 */
function affnet_notice( $message ) {
	if ( current_user_can( 'edit_posts' ) ) {
		return '<p class="affnet-note"><em>' . esc_html( $message ) . '</em></p>';
	}
	// "--" may not appear inside an HTML comment.
	return '<!-- affnet: ' . str_replace( '--', '- -', esc_html( $message ) ) . ' -->';
}

/**
 * A slot's format, from the publisher's slot list on affnet, cached in a transient for ten
 * minutes; a key the list lacks asks affnet again after a minute at most.
 *
 * @param string $key The slot's public key.
 * @return string The format, or '' when affnet does not know the key (or did not answer).
 */
function affnet_lookup_format( $key ) {
	$cached = get_transient( AFFNET_SLOTS_TRANSIENT );
	$cached = is_array( $cached ) && isset( $cached['formats'], $cached['at'] ) ? $cached : null;
	if ( $cached && isset( $cached['formats'][ $key ] ) ) {
		return $cached['formats'][ $key ];
	}
	if ( $cached && time() - (int) $cached['at'] < AFFNET_SLOTS_RETRY ) {
		return '';
	}
	$slots = Affnet_Api::slots();
	if ( is_wp_error( $slots ) ) {
		// Keep what was known; ask again in a minute rather than on every page view.
		$formats = $cached ? $cached['formats'] : array();
	} else {
		$formats = array();
		foreach ( $slots as $slot ) {
			if ( is_array( $slot ) && isset( $slot['public_key'], $slot['format'] ) && affnet_valid_key( $slot['public_key'] ) ) {
				$formats[ $slot['public_key'] ] = (string) $slot['format'];
			}
		}
	}
	set_transient(
		AFFNET_SLOTS_TRANSIENT,
		array(
			'formats' => $formats,
			'at'      => time(),
		),
		AFFNET_SLOTS_TTL
	);
	return isset( $formats[ $key ] ) ? $formats[ $key ] : '';
}

/**
 * The ad slot as the shortcode and the block print it.
 *
 * @param mixed $key    The slot's public key.
 * @param mixed $format Its format; '' to look it up on affnet.
 * @return string
 */
function affnet_render_slot( $key, $format ) {
	$base = Affnet_Api::base_url();
	if ( '' === $base ) {
		return affnet_notice( __( 'affnet ad slot: save the affnet address in Settings → affnet.', 'affnet' ) );
	}
	$key    = is_string( $key ) ? trim( $key ) : '';
	$format = is_string( $format ) ? trim( $format ) : '';
	if ( ! affnet_valid_key( $key ) ) {
		return affnet_notice( __( 'affnet ad slot: the slot key is missing or malformed.', 'affnet' ) );
	}
	if ( '' === $format ) {
		$format = affnet_lookup_format( $key );
		if ( '' === $format ) {
			return affnet_notice( __( 'affnet ad slot: affnet knows no slot with this key (or could not be reached).', 'affnet' ) );
		}
	}
	if ( ! array_key_exists( $format, affnet_slot_sizes() ) ) {
		return affnet_notice( __( 'affnet ad slot: unknown format.', 'affnet' ) );
	}
	return affnet_slot_markup( $base, $key, $format );
}

/**
 * True when $url is a tracked link on the saved affnet address (BASE/c/...), the only links the
 * tracked-link block prints: a stored attribute can never send readers anywhere else.
 *
 * @param mixed $url The URL to check.
 * @return bool
 */
function affnet_is_tracked_url( $url ) {
	$base = Affnet_Api::base_url();
	if ( '' === $base || ! is_string( $url ) || preg_match( '/[\s\x00-\x1f\x7f\\\\]/', $url ) ) {
		return false;
	}
	$prefix = $base . '/c/';
	return strlen( $url ) > strlen( $prefix ) && 0 === strpos( $url, $prefix );
}

/**
 * The tracked-link block's paragraph.
 *
 * @param array $attributes The block's attributes (url, text, ...).
 * @return string
 */
function affnet_render_tracked_link( $attributes ) {
	$url  = isset( $attributes['url'] ) ? $attributes['url'] : '';
	$text = isset( $attributes['text'] ) && is_string( $attributes['text'] ) ? trim( $attributes['text'] ) : '';
	if ( ! affnet_is_tracked_url( $url ) ) {
		if ( '' === $url ) {
			return affnet_notice( __( 'affnet tracked link: build the link in the editor first.', 'affnet' ) );
		}
		return affnet_notice( __( 'affnet tracked link: the link is not on the saved affnet address, so it is not shown.', 'affnet' ) );
	}
	if ( '' === $text ) {
		$text = $url;
	}
	return '<p class="affnet-link"><a href="' . esc_url( $url ) . '" rel="sponsored noopener">' . esc_html( $text ) . '</a></p>';
}
